"""What each modality's models and inputs look like on the wire: one module per modality,
each with its manifest (how to feed such a model) and its input body (one item)."""
