"""holo3d.sample"""
