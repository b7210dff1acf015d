// For the C++ samples that print one line per check: "ok NAME: WHAT" or "FAIL NAME: WHAT".
// Include inside the sample's anonymous namespace.
#ifndef COOP_SAMPLES_REPORT_HH
#define COOP_SAMPLES_REPORT_HH

int failures = 0;

void report(const std::string &name, bool passed, const std::string &what)
{
    std::printf("%s %s: %s\n", passed ? "ok" : "FAIL", name.c_str(), what.c_str());
    std::fflush(stdout);
    failures += !passed;
}

#endif
