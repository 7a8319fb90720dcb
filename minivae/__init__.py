r"""minivae: variational and importance-weighted autoencoders from scratch, with explicit backprop.

The derivation, file by file:

    backend.py       NumPy / CuPy: the array module follows the arrays
    layers.py        Dense, activations, MLP: forward -> (y, cache), backward(dy, cache) -> (dx, grads)
    gaussian.py      z = mu + exp(logvar/2) eps; KL(q || N(0, I)); log N(z; mu, sigma^2), log N(z; 0, I)
    likelihoods.py   log p(x | z): Bernoulli (logits), Gaussian (fixed / learned variance),
                     discretised logistic (8-bit pixels)
    objectives.py    the bounds as reductions of log w over K: mean (ELBO, k-sample ELBO) and
                     log-mean-exp (IWAE's L_k, with its importance-weighted gradient), in one table
    model.py         a model is its log-weight terms: VAE's forward once, its backward beneath;
                     the bound (any objective, any model) as a reduction over K
    two_layer.py     TwoLayerVAE: Burda et al.'s two stochastic layers x -> h1 -> h2
    conv.py          Conv2d, ConvTranspose2d, residual blocks: im2col, one product, col2im
    conv_vae.py      ConvVAE: the VAE with convolutional encoder and decoder
    optim.py         SGD (momentum), Adam, Adagrad over named parameters, in place
    estimators.py    the score-function (REINFORCE) gradient, to compare with reparameterisation

and around it: data.py (MNIST / Fashion-MNIST / CIFAR-10, binarisation), train.py (the training
loop), distributed.py (data parallelism over MPI), parallel.py (both cores for one process: a
batch in shares over threads, element-wise kernels in cache-sized row blocks, draws made ahead),
checkpoint.py (atomic .npz checkpoints and the one validating loader), checks.py (argument
checks with one-sentence errors), evaluate.py (L_k and active units), analysis.py (KL and
spread per latent unit; helpers for the teaching examples), plots.py (figures; needs matplotlib),
and above the library commands.py, the one module with command-line code (the flags, and
``python -m minivae.evaluate`` / ``minivae-evaluate``, ``python -m minivae.analysis`` /
``minivae-analysis``), and runs.py, what the example scripts share besides their flags.
"""
from .backend import Backend, BackendUnavailable, array_module, get_backend, to_host
from .model import VAE
from .two_layer import TwoLayerVAE
from .conv_vae import ConvVAE
from .objectives import OBJECTIVES
from .optim import SGD, Adagrad, Adam, make_optimizer

__version__ = "0.2.0"

__all__ = ["Backend", "BackendUnavailable", "array_module", "get_backend", "to_host", "VAE",
           "TwoLayerVAE", "ConvVAE",
           "OBJECTIVES", "SGD", "Adam", "Adagrad", "make_optimizer", "__version__"]
