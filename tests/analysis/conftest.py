"""Puts analysis/ (the plotting scripts and study_common) on sys.path for the pytest tests."""

import os
import sys

ANALYSIS_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis"))
if ANALYSIS_DIR not in sys.path:
    sys.path.insert(0, ANALYSIS_DIR)
