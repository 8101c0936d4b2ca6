from .base import Method


class Finetune(Method):
    """``L(D_r)`` only: forgetting by neglect."""

    def __call__(self, model, batches, step):
        retain = self.denoise_retain(model, *batches["retain"])
        return retain, {"retain": retain.detach()}
