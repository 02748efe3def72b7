"""meshlift deploy: the registry Secret and the mesh, from the private registry."""
