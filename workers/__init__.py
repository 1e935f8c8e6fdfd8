"""Job execution: the job store, the runner that calls engine/, and the Celery shell."""
