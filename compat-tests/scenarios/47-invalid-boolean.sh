# A yes/no setting with another value is refused (201) rather than read as
# "no", so a typo cannot silently turn a feature off; the original treats
# anything but "yes" as no (see DIFFERENCES.md).
procedure() { cl CRONLOCK_RESET=yess -- true; }
expect() { printf 'exit 201\n'; }
expect_original() { printf 'exit 0\n'; }
