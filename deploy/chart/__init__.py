"""Chart and values: where the chart comes from, the values Helm gets, offline rendering."""
