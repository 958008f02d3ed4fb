"""holo3d.data"""
