"""Post-rendering: the chart's output with images in R and the pull Secret, as the release holds."""
