"""HTTP routers: health, models, methods, explanations, jobs."""
