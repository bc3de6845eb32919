"""DistriNews: fine-tune DistilBERT on AG News, from one CPU to many GPUs with DDP.

The package in three groups. The training core imports nothing outside itself; the tools and the notebook helpers
build on it; the command line (`cli`) sits on top, imported by nothing but `__main__`; and no two modules import
each other, directly or around a loop (tests/test_architecture.py holds all of this):

- training core: the two training programs a learner reads (`train_single`, `train_ddp`) and the parts they
  call: `config`, `data` (with `synthetic` and `labels`), `batching`, `modeling`, `precision`, `distributed`
  (the process group), `checkpoint`, `evaluation`, `training` (resume checks, metrics lines, fault injection),
  `environment` (Kaggle or not);
- tools: `inference` (with `onnx_export`, its ONNX Runtime path), `prebuilt` (the CPU Space's, torch-free),
  `bench` and `bench_train`, `results`, `serving` (the Space), `publishing` and `kaggle` (with `kaggle_session`:
  each notebook's Kaggle session against what it needs), `site`, `gpu_check`;
- notebook helpers: `course` (the notebook list and the cells they share), `explore`, `concepts`, `analysis`,
  `plots`, `internals` (notebook 10: profiler timelines, memory per rank, stack dumps).
"""

__version__ = "0.1.0"

GROUPS = {
    "training core": ("train_single", "train_ddp", "config", "data", "synthetic", "labels", "batching", "modeling",
                      "precision", "distributed", "checkpoint", "evaluation", "training", "environment"),
    "tools": ("inference", "bench", "bench_train", "results", "serving", "publishing", "kaggle", "site", "gpu_check",
              "onnx_export", "prebuilt", "kaggle_session"),
    "notebook helpers": ("course", "explore", "concepts", "analysis", "plots", "internals"),
}
