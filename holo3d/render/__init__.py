"""holo3d.render"""
