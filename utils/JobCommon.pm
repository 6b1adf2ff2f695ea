# utils/JobCommon.pm -- the command-line interface that run.pl and slurm.pl share.
#
# Both backends take "[--opt value ...] [VAR=START:END | VAR=N] <log-file> <command> [<arg> ...]"
# (Kaldi's convention), so that a recipe's "${train_cmd} JOB=1:N log.JOB.log cmd ..." means the
# same on this machine and on a cluster: one parser, one quoting rule, one JOB substitution.
package JobCommon;
use strict;
use warnings;
use POSIX qw(strftime);
use Exporter qw(import);
our @EXPORT_OK = qw(parse_switches parse_job_args subst_var now);

# parse_switches(\@argv, \&usage): the leading "--name value" / "--name=value" switches of @argv
# (removed from it, up to a "--"), as [name, value] pairs with '-' in names turned into '_'.
# "--help" calls usage(0); a switch without its value calls usage().
sub parse_switches {
  my ($argv, $usage) = @_;
  my @pairs;
  while (@$argv && $argv->[0] =~ /^--/) {
    my $switch = shift @$argv;
    last if $switch eq '--';
    $usage->(0) if $switch eq '--help';
    my ($name, $value);
    if ($switch =~ /^--([^=]+)=(.*)$/s) {
      ($name, $value) = ($1, $2);
    } else {
      $name = substr($switch, 2);
      $usage->() unless @$argv;
      $value = shift @$argv;
    }
    $name =~ tr/-/_/;
    push @pairs, [$name, $value];
  }
  return @pairs;
}

# parse_job_args($me, \@argv, \&usage): the rest of the command line after the switches ->
# ($var, $first, $last, $log_template, $cmd_template).  $var is undef without a range (one task).
# A single command argument is used verbatim (a pipeline in one string); with several, those that
# are empty or hold whitespace, quotes, a backslash or a glob character are single-quoted so that
# they reach the program unchanged, and the others (an escaped \| or >, 2>&1, ark:-) stay shell
# words, as in Kaldi.
sub parse_job_args {
  my ($me, $argv, $usage) = @_;
  my ($var, $first, $last) = (undef, 1, 1);
  if (@$argv && $argv->[0] =~ /^([A-Za-z_]\w*)=(\d+):(\d+)$/) {
    ($var, $first, $last) = ($1, $2, $3);
    shift @$argv;
    die "$me: empty range $var=$first:$last (start > end)\n" if $first > $last;
  } elsif (@$argv && $argv->[0] =~ /^([A-Za-z_]\w*)=(\d+)$/) {
    ($var, $first, $last) = ($1, $2, $2);
    shift @$argv;
  }
  $usage->() if @$argv < 2;
  my $log_template = shift @$argv;
  if (defined $var && $last > $first && index($log_template, $var) < 0) {
    die "$me: $var=$first:$last runs several tasks but the log file '$log_template' "
      . "does not contain '$var', so they would overwrite one log\n";
  }
  my $cmd_template;
  if (@$argv == 1) {
    $cmd_template = $argv->[0];
  } else {
    my @words;
    for my $arg (@$argv) {
      if ($arg =~ /^[^\s'"\\*?\[\]]+$/) {
        push @words, $arg;
      } else {
        (my $q = $arg) =~ s/'/'\\''/g;
        push @words, "'$q'";
      }
    }
    $cmd_template = join(' ', @words);
  }
  return ($var, $first, $last, $log_template, $cmd_template);
}

# subst_var($text, $var, $id): every occurrence of $var in $text replaced by the task number
# (plain substring replacement, as in Kaldi); $text unchanged without a range.
sub subst_var {
  my ($text, $var, $id) = @_;
  return $text unless defined $var;
  $text =~ s/\Q$var\E/$id/g;
  return $text;
}

# now(): the date as the logs' "# Started at" / "# Ended ... at" lines show it.
sub now { return strftime('%a %b %e %H:%M:%S %Z %Y', localtime); }

1;
