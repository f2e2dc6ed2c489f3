"""Image making: partition layouts, file system images, reproducible root file systems."""
