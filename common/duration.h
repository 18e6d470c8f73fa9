#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace custody {

// "250ms", "30s", "15m", "12h", "90d" → milliseconds; nullopt for anything else.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
std::string format_duration(std::chrono::milliseconds d);

}  // namespace custody
