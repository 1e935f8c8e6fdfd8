"""The job layer, framework-free: the store (behind its own API), the runtime a process
builds from settings, the runner (one path for a job's stages), chunked plans and their
assembly, and the dispatcher contract. Celery lives in ``workers/``, as a thin shell."""
