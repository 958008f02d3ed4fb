"""holo3d.models"""
