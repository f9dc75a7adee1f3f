"""Reading a collection: sources (folders, ImageFolder trees, label tables, COCO), text files, decoding."""
