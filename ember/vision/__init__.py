"""ember.vision: images, masks and points; their transforms; the image DataLoaders factories."""

import ember.vision.app  # noqa: F401  registers vision with export, load_learner, the server and the report
import ember.vision.datasets  # noqa: F401  registers the built-in segmentation data sets (brain_mri, nuclei)
