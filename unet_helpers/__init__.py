"""unet_helpers: the reusable code of the U-Net notebook series.

Modules, one job each:
    models      the paper's U-Net by hand (UNetOriginal) and the configurable UNet
    tiling      the paper's overlap-tile prediction for images of any size
    weight_map  the paper's border-weighted loss map
    data        TGS Salt, one module per job: files, download (Kaggle), standin, rle, dataset, source
    losses      BCE, Dice, BCE + Dice, Lovasz hinge
    metrics     IoU, Dice, pixel accuracy and the competition's tgs_score
    engine      train_step / eval_step / train with checkpoints and resume
    recipes     the training recipes of notebook 04, by name
    postprocess threshold and minimum salt area, chosen on validation tiles
    pretrained  the trained U-Nets that ship with the package: load_pretrained("medium-strong")
    anatomy     inside a U-Net: feature maps, cut skips, receptive fields, border errors
    exercises   the notebooks' exercises and their checks (solutions: unet_helpers.solutions)
    plots       figures the notebooks draw more than once
    utils       device, seeding, fast-mode switch
"""

__version__ = "0.1.0"
