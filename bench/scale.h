#pragma once
// Memory and scale: RSS with many keys × 5 versions and 1k idle connections, start-up time with
// those keys, and unwrap latency with them against the same daemon with one key.
#include <string>

#include "bench/report.h"

namespace custody::bench {

inline constexpr unsigned kScaleVersions = 5;
inline constexpr unsigned kIdleConnections = 1000;
// First keys timed on their own, to tell how long the whole set-up will take.
inline constexpr unsigned kScaleProbeKeys = 200;

inline constexpr const char* kScaleRssFigure = "scale.rss_mib";            // N keys + idle connections
inline constexpr const char* kScaleRssNoIdleFigure = "scale.rss_keys_only_mib";     // after a restart
inline constexpr const char* kScaleRssAfterSetupFigure = "scale.rss_after_setup_mib";  // before it
inline constexpr const char* kScaleRssOneKeyFigure = "scale.rss_one_key_mib";
inline constexpr const char* kScaleStartupFigure = "scale.startup_s";
inline constexpr const char* kScaleStartupOneKeyFigure = "scale.startup_one_key_s";
inline constexpr const char* kScaleSetupFigure = "scale.setup_s";
inline constexpr const char* kScaleKeysFigure = "scale.keys";
inline constexpr const char* kScaleIdleFigure = "scale.idle_connections";

// "unwrap c=1, 1 key" / "unwrap c=1, 10000 keys"
const char* scale_one_key_row();
std::string scale_many_keys_row(unsigned keys);

void run_scale(unsigned keys, double seconds, Report& report);

}  // namespace custody::bench
