"""Lantern's HTTP surface: FastAPI routers, thin shells over engine/ and workers/."""
