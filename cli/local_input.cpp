#include "cli/local_input.h"

#include <termios.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace custody::cli {

std::optional<std::string> read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::optional<SecureString> read_pin(const std::optional<std::string>& file, const char* prompt) {
  SecureString pin;
  if (file) {
    std::ifstream in(*file);
    if (!in) return std::nullopt;
    std::getline(in, pin);
    return pin;
  }
  std::FILE* tty = std::fopen("/dev/tty", "r+");
  if (!tty) return std::nullopt;
  termios old{};
  if (::tcgetattr(::fileno(tty), &old) != 0) {
    std::fclose(tty);
    return std::nullopt;
  }
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  if (::tcsetattr(::fileno(tty), TCSANOW, &quiet) != 0) {
    std::fclose(tty);
    return std::nullopt;
  }
  std::fputs(prompt, tty);
  std::fflush(tty);
  for (int c; (c = std::fgetc(tty)) != EOF && c != '\n';) pin.push_back(static_cast<char>(c));
  ::tcsetattr(::fileno(tty), TCSANOW, &old);
  std::fputs("\n", tty);
  std::fclose(tty);
  return pin;
}

}  // namespace custody::cli
