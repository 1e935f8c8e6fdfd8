"""Explanation methods for time-series models (modality ``time_series``): one module per
method, each registering a spec under the same name as its image peer. Items are
:class:`~engine.modalities.time_series.SeriesInput` (C, T); every map is (channel, time)
or (time,), whatever the graph's layout."""
