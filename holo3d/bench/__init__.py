"""holo3d.bench: the performance benchmark (``python -m holo3d.bench``), one JSON line per figure.

Figures (see each module's docstring for exactly what is timed):

    numerics      bf16 autocast vs fp32 on a fixed batch: U-Net output, rendered colours, loss
    train         forward + backward + optimizer step of the full model, peak memory, scenes/s
    unet          one denoising step of the 3D U-Net (batch 1 and 15)
    sample        a full 1000-step DDPM sample (and 50-step DDIM) of 15 grids, ``model.sample``
    render        one full 256x256 frame of a 16^3 x 64 grid at several chunk sizes
    e2e           ``generate_samples.py num_samples=15`` on a fresh experiment folder (subprocess)
    profile       torch.profiler table of the top ops of one workload (``--profile WHAT``)

Those are HoloDiffusion's (``--model holo``, the default). ``--model genvs|viewfusion|voxel_ldm|distill``
measures another system, built from its config, with two figures (``systems``):

    system.train  the trainer's training step (distill: one distillation iteration): items/s, step
                  time, peak memory, FLOPs (FlopCounterMode) and MFU against the GPU's peak
    system.sample ``model.sample`` with the config's sampler (distill: seconds per iteration)

``official_step`` times the official HoloDiffusion code's training step on the same synthetic
batches, from a user's checkout (scripts/bench_against_official.sh prints the ratios).

Modules, one concept each:

    settings          BenchSettings: the base (GPU) and tiny (CPU) configurations
    report            Reporter: environment fields and the JSON-line writer
    timing            warm-up + repeats timed with CUDA events (or perf_counter on CPU)
    model_setup       building the model from dotted overrides, precision contexts
    synthetic_batch   FrameData batches of S scenes x N frames on orbits, made on the device
    train_step / unet_step / sample_run / render_frame / end_to_end / numerics / profiling
    denoiser_variants channels_last_3d, torch.compile and CUDA-graph variants of the U-Net
    fresh_experiment  an experiment folder (expconfig.yaml + checkpoint) with random weights
    context / runner  shared state (device, model) and the figure dispatch with error capture
    systems           --model genvs / viewfusion / voxel_ldm / distill: per-system training and
                      sampling figures, FLOP counting and MFU
    official_step     the official code's training step, imported from OFFICIAL_DIR (never vendored)
"""
