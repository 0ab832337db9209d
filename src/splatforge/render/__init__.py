"""Rendering Gaussians to images on disk."""
