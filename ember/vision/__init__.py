"""ember.vision: images, masks and points; their transforms; the image DataLoaders factories."""
