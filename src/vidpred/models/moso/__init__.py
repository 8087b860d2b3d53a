"""MOSO (Sun et al., CVPR 2023): motion / scene / object VQVAE and the MOSO-Transformer.

One concern per module:

* ``quantizer``   — the one codebook shared by scene, object and motion (EMA, Laplace smoothing, dead codes)
* ``encoders``    — scene / object encoders (time collapsed) and the motion encoder (working-pool attention)
* ``decoder``     — the time-independent decoder with the motion-guided merge module
* ``vqvae``       — MOSO-VQVAE (and the non-decomposed ablation), its losses, the video discriminator
* ``transformer`` — TransformerSO/G (shared weights) and TransformerM
* ``sampling``    — MaskGIT masking and sampling, pseudo clips, prediction / interpolation / generation
* ``inference``   — loading trained models, tokenising clips, decoding, writing frames / GIF / grid
"""
