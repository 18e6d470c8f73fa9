#include "config/config.h"

namespace custody::config {

std::string ConfigError::format(const std::string& file) const {
  std::string where = file;
  if (line > 0) where += ":" + std::to_string(line) + ":" + std::to_string(column);
  return where + ": " + (key_path.empty() ? "" : key_path + ": ") + message;
}

const char* durability_name(Durability d) {
  switch (d) {
    case Durability::always: return "always";
    case Durability::group: return "group";
    case Durability::none: return "none";
  }
  return "group";
}

}  // namespace custody::config
