"""Wrapper for run_original_cpu.py that also makes storage.cuda() the identity (--reload_model maps to cuda)."""
import os, runpy, sys
import torch
for cls in (torch.UntypedStorage, torch.TypedStorage):
    cls.cuda = lambda self, *a, **k: self
sys.argv = [os.environ['RUN_ORIGINAL_CPU']] + sys.argv[1:]
runpy.run_path(os.environ['RUN_ORIGINAL_CPU'], run_name='__main__')
