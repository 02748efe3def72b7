"""meshlift mirror: copy locked images into a private registry and across air gaps."""
