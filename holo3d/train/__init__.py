"""holo3d.train"""
