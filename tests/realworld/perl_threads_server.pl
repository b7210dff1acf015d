#!/usr/bin/perl
# A thread-per-connection line server on Perl's ithreads, for test_perl_threads.sh.
#
#     perl perl_threads_server.pl PORT
#
# Listens on 127.0.0.1:PORT and prints "listening on PORT". Each connection gets a thread of
# its own, which first blocks every signal (POSIX::sigprocmask is pthread_sigmask in a threaded
# perl), as servers do so that main alone takes them. The thread answers each line with
# "LENGTH REVERSED-LINE", except "RUNNING" (answer "RUNNING N": N connection threads are
# running) and "THREAD" (answer "THREAD TID lines N": its thread id, and the lines it has
# answered), until the client closes the connection. Main accepts until SIGTERM, whose handler
# ($SIG{TERM}) interrupts the accept; it then shuts every connection down, so that their
# threads read the end of their input, joins them, prints "stopped by SIGTERM in thread 0 after
# C connections, L lines" and exits 0.
use strict;
use warnings;
use threads;
use IO::Socket::INET;
use POSIX ();
use Socket qw(SHUT_RDWR);

my $port = shift // die "usage: $0 PORT\n";
my $stopped_by;
$SIG{TERM} = sub { $stopped_by = "SIGTERM in thread " . threads->tid };

my $listener = IO::Socket::INET->new(
    LocalAddr => "127.0.0.1", LocalPort => $port, Listen => 128, ReuseAddr => 1)
    or die "listen on 127.0.0.1:$port: $!\n";
$| = 1;
print "listening on $port\n";

sub serve {
    my ($conn) = @_;
    my $every_signal = POSIX::SigSet->new;
    $every_signal->fillset;
    POSIX::sigprocmask(POSIX::SIG_BLOCK, $every_signal) or die "sigprocmask: $!\n";
    my $lines = 0;
    while (my $line = <$conn>) {
        $line =~ s/\r?\n\z//;
        if ($line eq "RUNNING") {
            print $conn "RUNNING ", scalar(threads->list(threads::running)), "\n";
        } elsif ($line eq "THREAD") {
            print $conn "THREAD ", threads->tid, " lines $lines\n";
        } else {
            $lines++;
            print $conn length($line), " ", scalar reverse($line), "\n";
        }
    }
    close $conn;
    return $lines;
}

my @connections;
until (defined $stopped_by) {
    if (my $conn = $listener->accept) {
        threads->create({ context => "scalar" }, \&serve, $conn);
        push @connections, $conn; # for the shutdown; the thread has its own handle
    } elsif (!$!{EINTR}) {
        die "accept: $!\n";
    }
}
shutdown($_, SHUT_RDWR) for @connections;
my $lines = 0;
$lines += $_->join for threads->list;
printf "stopped by %s after %d connections, %d lines\n", $stopped_by, scalar @connections, $lines;
exit 0;
