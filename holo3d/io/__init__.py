"""holo3d.io: files every package writes (checkpoints, configs, results, videos), written atomically.

    atomic_file   open_atomic / write_text_atomic / temporary_sibling: temp name, fsync, rename

It imports nothing of holo3d, so train/, sample/ and eval/ can all use it without a cycle.
"""
