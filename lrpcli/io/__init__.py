"""Files and pictures, knowing nothing of LRP: input discovery, decoding, preprocessing, rendering,
atomic file writes."""
