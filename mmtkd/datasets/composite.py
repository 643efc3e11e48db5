"""Build the composite detection / segmentation set: real Fashion-MNIST objects pasted onto crops
of real photographs shipped by scikit-learn and scikit-image.

Every image is a random crop of a real photo with 1-4 Fashion-MNIST objects (10 classes) pasted
at random scales and colours; later objects occlude earlier ones, and each instance's box and
mask are computed from what stays visible, so annotations are exact. Instances with less than
``min_visible`` visible pixels are dropped. Deterministic given ``--seed``.

Writes, under ``--out``:
    images/{train,val}/NNNNNN.png       the images
    annotations/{train,val}.json        COCO detection + instance masks (RLE), 10 categories
    masks/{train,val}/NNNNNN.png        semantic label maps: 0 background, k+1 for class k

Usage:
    python tools/data/build_composite.py [--out data/composite] [--train 2000] [--val 400]
                                         [--size 128] [--seed 0]
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image

FASHION_CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt',
                   'Sneaker', 'Bag', 'Ankle boot')
PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket', 'hubble_deep_field', 'immunohistochemistry')


def load_backgrounds() -> List[np.ndarray]:
    """Real RGB photos from scikit-learn and scikit-image (no download)."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise ImportError('the composite set needs scikit-learn and scikit-image: '
                          'pip install scikit-learn scikit-image') from err
    photos = list(load_sample_images().images)
    photos += [getattr(skimage.data, name)() for name in PHOTOS]
    return [p for p in photos if p.ndim == 3]


def load_fashion_objects(fashion_root: str) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST training images and labels from the raw IDX files (plain or .gz)."""
    from .fashion_mnist import DEBIAN_SOURCE, build
    if not osp.isdir(fashion_root):
        build(DEBIAN_SOURCE, fashion_root)

    def read(name, offset):
        with open(osp.join(fashion_root, name), 'rb') as f:
            return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

    images = read('train-images-idx3-ubyte', 16).reshape(-1, 28, 28)
    labels = read('train-labels-idx1-ubyte', 8)
    return images, labels


def compose(rng: np.random.Generator, backgrounds, objects, labels, size: int,
            min_visible: int) -> Tuple[np.ndarray, List[Tuple[int, np.ndarray]]]:
    """One composite image and its visible instances ``(class, mask)``."""
    photo = backgrounds[rng.integers(len(backgrounds))]
    y0 = rng.integers(0, photo.shape[0] - size + 1)
    x0 = rng.integers(0, photo.shape[1] - size + 1)
    image = photo[y0:y0 + size, x0:x0 + size].copy()
    owner = np.full((size, size), -1, dtype=np.int64)  # which instance each pixel shows
    classes = []
    for k in range(rng.integers(1, 5)):
        index = rng.integers(len(objects))
        side = int(rng.integers(size // 5, size // 2))
        patch = np.asarray(Image.fromarray(objects[index]).resize((side, side), Image.BILINEAR))
        alpha = patch > 40  # the garment's silhouette
        y, x = rng.integers(0, size - side + 1), rng.integers(0, size - side + 1)
        colour = rng.integers(60, 256, size=3)
        region = image[y:y + side, x:x + side]
        shade = (patch[..., None] / 255.0) * colour
        region[alpha] = shade[alpha].astype(np.uint8)
        owner[y:y + side, x:x + side][alpha] = k
        classes.append(int(labels[index]))
    instances = []
    for k, cls in enumerate(classes):
        mask = owner == k
        if mask.sum() >= min_visible:
            instances.append((cls, mask))
    return image, instances


def mask_to_rle(mask: np.ndarray) -> Dict:
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def build_split(out: str, split: str, count: int, rng, backgrounds, objects, labels, size: int,
                min_visible: int) -> str:
    """Write one split; returns the annotation file path."""
    image_dir = osp.join(out, 'images', split)
    mask_dir = osp.join(out, 'masks', split)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(mask_dir, exist_ok=True)
    os.makedirs(osp.join(out, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, instances = compose(rng, backgrounds, objects, labels, size, min_visible)
        name = f'{i:06d}.png'
        Image.fromarray(image).save(osp.join(image_dir, name))
        semantic = np.zeros((size, size), dtype=np.uint8)
        for cls, mask in instances:
            semantic[mask] = cls + 1
            ys, xs = np.nonzero(mask)
            x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=i + 1,
                    category_id=cls + 1,
                    bbox=[int(x1), int(y1), int(x2 - x1),
                          int(y2 - y1)],
                    area=int(mask.sum()),
                    segmentation=mask_to_rle(mask),
                    iscrowd=0))
        Image.fromarray(semantic).save(osp.join(mask_dir, name))
        images.append(dict(id=i + 1, file_name=name, width=size, height=size))
    categories = [dict(id=k + 1, name=n) for k, n in enumerate(FASHION_CLASSES)]
    path = osp.join(out, 'annotations', f'{split}.json')
    with open(path, 'w') as f:
        json.dump(dict(images=images, annotations=annotations, categories=categories), f)
    return path


def build(out: str,
          train: int = 2000,
          val: int = 400,
          size: int = 128,
          seed: int = 0,
          fashion_root: str = 'data/fashion_mnist',
          min_visible: int = 30) -> Dict[str, str]:
    """Build both splits; returns ``{split: annotation file}``."""
    rng = np.random.default_rng(seed)
    backgrounds = [b for b in load_backgrounds() if min(b.shape[:2]) >= size]
    objects, labels = load_fashion_objects(fashion_root)
    return {
        split: build_split(out, split, count, rng, backgrounds, objects, labels, size, min_visible)
        for split, count in (('train', train), ('val', val))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/composite')
    parser.add_argument('--train', type=int, default=2000)
    parser.add_argument('--val', type=int, default=400)
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--fashion-root', default='data/fashion_mnist')
    args = parser.parse_args()
    try:
        files = build(args.out, args.train, args.val, args.size, args.seed, args.fashion_root)
    except (FileNotFoundError, ImportError) as err:
        sys.exit(str(err))
    for split, path in files.items():
        print(f'{split}: {path}')


if __name__ == '__main__':
    main()
