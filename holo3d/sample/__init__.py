"""holo3d.sample: what users do with a trained model (generate_samples.py, visualize_reconstruction.py,
distill.py), through the model protocol (holo3d.models.protocol) only.

    script_config            typed configs of both scripts (Hydra ConfigStore)
    script_runner            one-line errors and exit status for the entry points
    input_checks             the user-facing errors, and exp_dir checks that need no import
    experiment_loader        exp_dir -> config + model + weights (EMA preferred), or one clear error
    dataset_access           the experiment's dataset, only when it is on disk
    camera_path              turntable cameras (up axis / distance from data when available)
    frame_renderer           chunked full-frame rendering of a grid, depth colouring, panels
    video_writer             mp4 (imageio-ffmpeg h264, or OpenCV mp4v) and gif, written atomically
    contact_sheet            one PNG of all samples from fixed views
    mesh_export              density -> marching cubes -> coloured PLY
    progressive              the denoising animation (x0 estimate every k steps, moving camera)
    generate                 generate_samples.py's driver
    sequence_reconstruction  few-view reconstruction of one held-out sequence
    reconstruct              visualize_reconstruction.py's driver
    distill_config           distill.py's typed config
    distillation             SparseFusion-style distillation of a view-conditioned denoiser into a field

Modules are imported where used (not here): the entry points stay quick to start and to fail.
"""
