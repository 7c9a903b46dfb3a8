"""unilvseg: left-ventricle segmentation in echocardiogram videos with few or no labels."""

__version__ = "0.1.0"
