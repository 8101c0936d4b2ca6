from .base import Method


class Finetune(Method):
    """``L(D_r)`` only: forgetting by neglect (the plain baseline; no original code to follow). Its unlearning term
    is the retain loss itself."""

    def unlearning_term(self, model, batches):
        return self.denoise_retain(model, *batches["retain"])

    def __call__(self, model, batches, step):
        retain = self.unlearning_term(model, batches)
        return retain, {"forget": retain.detach(), "retain": retain.detach()}
