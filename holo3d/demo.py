"""`make demo`: the whole pipeline on the built-in dataset, on CPU, in a few minutes.

1. generates the built-in synthetic dataset (CO3Dv2 format) if it is missing,
2. trains the tiny ``demo`` config,
3. samples a turntable video from the trained model,
and prints where everything is. Each step is the command a user would type, so the demo exercises
exactly the documented entry points.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_step(title: str, command: list) -> None:
    print(f"\n== {title}\n$ {' '.join(map(str, command))}", flush=True)
    tic = time.perf_counter()
    subprocess.run([str(c) for c in command], cwd=REPO, check=True)
    print(f"-- {title}: done in {time.perf_counter() - tic:.0f} s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data-dir", default="data/builtin_demo")
    parser.add_argument("--exp-dir", default="exp/demo")
    parser.add_argument("--num-samples", type=int, default=2)
    args = parser.parse_args(argv)
    data_dir, exp_dir = Path(args.data_dir).resolve(), Path(args.exp_dir).resolve()
    python = sys.executable
    if (data_dir / "chair" / "frame_annotations.jgz").is_file():
        print(f"== built-in dataset: already at {data_dir}")
    else:
        run_step("built-in dataset", [python, "-m", "holo3d.data.synthetic", "--preset", "demo",
                                      "--out", data_dir])
    run_step("train (configs/demo.yaml)", [python, "experiment.py", "--config-name", "demo.yaml",
                                           f"exp_dir={exp_dir}", f"data_source_Holo3DDataSource_args."
                                           f"dataset_map_provider_JsonIndexDatasetMapProviderV2_args."
                                           f"dataset_root={data_dir}"])
    run_step("sample videos", [python, "generate_samples.py", f"exp_dir={exp_dir}",
                               f"num_samples={args.num_samples}", "sampler=ddim", "steps=25",
                               "render_size=[64,64]", "video_size=[128,128]", "n_frames=24"])
    print("\nholo3d demo finished:")
    print(f"  dataset      {data_dir}")
    print(f"  experiment   {exp_dir}  (expconfig.yaml, train.log, checkpoints/)")
    print(f"  videos       {exp_dir / 'generated_samples'}")
    print("  dashboard    make dashboard  (then re-run training with training_loop_HoloTrainingLoop_args.logger=visdom)")


if __name__ == "__main__":
    main()
