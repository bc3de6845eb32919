"""DistriNews: fine-tune DistilBERT on AG News, from one CPU to many GPUs with DDP."""

__version__ = "0.1.0"
