# The demo student trained alone (no distillation): the reference row of the demo table.
_base_ = ['./_base_/fashion_mnist.py', './_base_/fashion_mnist_models.py']
model = {{_base_.student_res18}}
