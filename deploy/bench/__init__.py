"""``python -m deploy bench DIR``: eager vs JIT vs lite (vs ONNX Runtime) benchmark of converted artifacts.

What is measured, per tower (``role``), variant, quantized engine, thread count and OpenMP wait policy:

- ``size_bytes``: the artifact on disk (``.ptl`` / ``.pt`` / ``.onnx``); for eager variants the serialized
  ``state_dict`` of the tower (``size_kind`` says which).
- ``load_ms``: time to load in a *fresh* process, one sample per repetition (``--load-repeats``); for eager
  variants, the time to rebuild the model from the manifest (create + load weights + quantize).
- ``first_ms``: the first call after load (a ``.pt`` pays the profiling executor here; lite does not);
  ``warmup_ms`` keeps the following warm-up calls.
- ``steady_ms``: median / p90 of the timed calls after warm-up, pooled over the repetitions.
- ``peak_rss_bytes``: the process's peak RSS (VmHWM); ``peak_rss_above_baseline_bytes`` subtracts the RSS
  measured right after importing the runtime (``import torch``; plus open_clip for eager variants and
  onnxruntime for ONNX), i.e. what loading and running the model costs. ``anon_after_first_call_bytes``
  and ``file_after_first_call_bytes`` split the resident memory above that baseline after the first call
  into anonymous memory (weights, packed weights, activations) and file-backed pages (the runtime's own
  code the first call touches: shared, not the artifact). ``.pt``/``.ptl`` load through ``deploy.heap.load``
  and run their first call inside ``deploy.heap.first_call``, as the kit's runtime does (``heap_phase``).

Every measurement runs in its own subprocess (so the load is cold, the OpenMP environment is set before
torch starts, and memory is not shared between variants), and the repetitions are interleaved: repetition
``r`` runs every configuration once, round-robin, before repetition ``r + 1`` starts, so machine load
drifts hit all variants alike. Ratios are to the fp32 eager model at the same thread count and OpenMP
policy, from the same run.

The modules: ``worker.py`` (the fresh-process measurement, standard library only at import, and the one
sample-input builder), ``plan.py`` (what to measure, interleaving, aggregation), ``peers.py`` (the ONNX
Runtime peer), ``report.py`` (the v1 report), ``cli.py`` (the command). ``benchmarks/`` builds its tools
on these.
"""
