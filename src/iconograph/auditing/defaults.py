"""The audit's documented defaults, in one light module (the command line imports it at start-up
without numpy, scipy or cleanlab). Each is explained where it is used."""

# duplicates (iconograph.auditing.duplicates)
TIERS = ("identical", "perceptual", "near")  # strongest first; all looked for by default
PHASH_DISTANCE = 8  # perceptual tier: at most 8 of 64 phash bits differ
NEAR_SIMILARITY = 0.95  # near tier: embedding cosine at least this
NEAR_K = 10  # near tier: neighbours looked at per image

# outliers (iconograph.auditing.outliers)
OUTLIER_K = 10  # mean cosine distance to this many nearest images
OUTLIER_MADS = 3.0  # flagged above median + 3 x 1.4826 x MAD
MIN_IMAGES = 5  # fewer embedded images: no embedding outliers
TINY_SIDE = 64  # px, shorter side
BLUR_VARIANCE = 100.0  # variance of the Laplacian of the luminance (0..255), image <= 512 px a side
DARK = 0.1  # mean luminance (0..1)
BRIGHT = 0.9
EMPTY_CONTRAST = 0.02  # luminance standard deviation (0..1)
GRAY_DIFFERENCE = 2 / 255  # largest channel difference of any pixel (0..1)

# suspect labels (iconograph.auditing.labels)
FOLDS = 5
SEED = 0
