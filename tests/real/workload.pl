# SPDX-License-Identifier: MIT
# Perl workload for tests/real/cases.sh: hashes, regexes, sort, strings, fork; reads lines on stdin; deterministic output.
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my (%by_word, %count, @lines);
while (my $line = <STDIN>) {
  chomp $line;
  push @lines, $line;
  my ($a, $b, $n) = split / /, $line;
  $count{$b}++;
  push @{ $by_word{substr($a, 0, 2)} }, $n;
}
print "lines ", scalar(@lines), " keys ", scalar(keys %count), "\n";

my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9];
print "top @top\n";

my $ctx = Digest::MD5->new;
for my $k (sort keys %by_word) {
  my @v = sort { $a <=> $b } @{ $by_word{$k} };
  $ctx->add("$k:" . scalar(@v) . ":" . join(",", @v[0 .. ($#v < 5 ? $#v : 5)]));
}
print "groups ", scalar(keys %by_word), " ", $ctx->hexdigest, "\n";

# Regexes with captures and substitutions build many short strings.
my $text = join("\n", @lines[0 .. 49999]);
(my $t2 = $text) =~ s/([a-z]+) ([a-z]+)/$2=$1/g;
my @caps = $t2 =~ /^([a-z]{3})=.*?(\d+)$/mg;
print "regex ", scalar(@caps), " ", md5_hex($t2), "\n";

# Growing and shrinking strings and arrays.
my $s = "";
for my $i (1 .. 200000) {
  $s .= chr(65 + $i % 26) x ($i % 13);
  substr($s, 0, 1000, "") if length($s) > 100000;
}
my @arr = map { [$_, "v" x ($_ % 50)] } 1 .. 100000;
splice(@arr, 1000, 50000);
print "strings ", length($s), " ", md5_hex($s), " arr ", scalar(@arr), "\n";

# A child process (inherits the preload) through a pipe.
open(my $kid, "-|", "perl", "-e", 'my %h = map { $_ => $_ x 2 } 1..50000; print scalar(keys %h), "\n"')
  or die "fork: $!";
my $got = <$kid>;
close($kid) or die "child failed";
print "child $got";
