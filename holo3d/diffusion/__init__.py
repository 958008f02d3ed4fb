"""holo3d.diffusion"""
