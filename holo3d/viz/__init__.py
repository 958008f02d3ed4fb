"""holo3d.viz"""
