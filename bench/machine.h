#pragma once
// One line about the machine and the module, printed above the table so figures keep their context.
#include <string>

namespace custody::bench {

std::string describe_machine();

}  // namespace custody::bench
