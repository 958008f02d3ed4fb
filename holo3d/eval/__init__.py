"""holo3d.eval"""
