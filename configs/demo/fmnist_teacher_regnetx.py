# Demo teacher trained on Fashion-MNIST by tools/demo.py (cached in work_dirs/demo/teachers/).
_base_ = ['./_base_/fashion_mnist.py', './_base_/fashion_mnist_models.py']
model = {{_base_.teacher_regnetx}}
