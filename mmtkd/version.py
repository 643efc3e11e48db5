"""Version of mmtkd and the versions of its stack it was tested with."""
__version__ = '0.1.0'

#: Versions the test-suite runs against; other versions trigger a warning, never an error.
TESTED_VERSIONS = {
    'torch': '2.14',
    'mmengine': '0.10.7',
    'mmcv': '2.1.0',
    'mmdet': '3.3.0',
    'mmseg': '1.2.2',
    'mmpretrain': '1.2.0',
}
