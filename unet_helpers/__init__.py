"""unet_helpers: the reusable code of the U-Net notebook series.

Modules, one job each:
    models      the paper's U-Net by hand (UNetOriginal) and the configurable UNet
    tiling      the paper's overlap-tile prediction for images of any size
    weight_map  the paper's border-weighted loss map
    data        TGS Salt: Kaggle download, offline stand-in, RLE, dataset, split
    losses      BCE, Dice, BCE + Dice, Lovasz hinge
    metrics     IoU, Dice, pixel accuracy and the competition's tgs_score
    engine      train_step / eval_step / train with checkpoints and resume
    plots       figures the notebooks draw more than once
    utils       device, seeding, fast-mode switch
"""
__version__ = "0.1.0"
