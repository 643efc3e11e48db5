"""Install mmtkd. The OpenMMLab stack (torch, mmcv built with ops, ...) is installed by
``tools/install.sh``; see README.md."""
from setuptools import find_packages, setup


def read_version() -> str:
    namespace: dict = {}
    with open('mmtkd/version.py', encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(path: str) -> list:
    with open(path, encoding='utf-8') as f:
        return [line.strip() for line in f if line.strip() and not line.startswith(('#', '-'))]


setup(
    name='mmtkd',
    version=read_version(),
    description='Multi-teacher knowledge distillation with an RL teacher-weighting agent '
    '(MTKD-RL) for MMEngine / mmdet / mmseg / mmpretrain',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmtkd', 'mmtkd.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
    license='Apache-2.0',
)
