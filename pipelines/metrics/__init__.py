"""Physical skin metrics on the canonical face frame: pure functions, arrays in, dataclasses out.

``colour``: sRGB/linear/CIELAB conversions, delta-E 2000 and the colour normalisation (illumination
gradient + white balance) that every colour metric runs on. ``pigmentation``: ITA, melanin and
erythema indices, brown spots, red areas and tone unevenness per facial region.
"""
