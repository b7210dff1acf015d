%% An Erlang server of digest_client.py's protocol, for test_erlang.sh: a process per
%% connection over gen_tcp, run by the BEAM's schedulers (OS threads, each with a signal stack
%% of its own, running JIT-compiled code on every Erlang process's own stack).
%%
%%     erlc -o DIR digest_server.erl && erl -noshell -pa DIR -run digest_server main PORT
%%
%% Listens on 127.0.0.1:PORT and prints "listening on PORT". Each connection gets a process
%% that reads requests, a line with a length N and then N bytes, and answers each with a line
%% holding the SHA-256 of those bytes in hex and then the bytes themselves (lines end with
%% CRLF), until the client closes the connection. On SIGTERM it prints "stopped:
%% connections=N requests=N" (a request is counted before its answer is sent) and exits 0.
-module(digest_server).
-behaviour(gen_event).
-export([main/1]).
-export([init/1, handle_event/2, handle_call/2]).

-define(CONNECTIONS, 1).
-define(REQUESTS, 2).

main([Port]) ->
    Counts = counters:new(2, [write_concurrency]),
    %% SIGTERM reaches erl_signal_server, whose default handler stops the system: this
    %% module's prints the counts first.
    ok = gen_event:swap_handler(erl_signal_server, {erl_signal_handler, []}, {?MODULE, Counts}),
    {ok, Listen} = gen_tcp:listen(list_to_integer(Port),
                                  [binary, {ip, {127, 0, 0, 1}}, {active, false},
                                   {reuseaddr, true}, {backlog, 128}]),
    io:format("listening on ~s~n", [Port]),
    accept(Listen, Counts).

accept(Listen, Counts) ->
    {ok, Sock} = gen_tcp:accept(Listen),
    counters:add(Counts, ?CONNECTIONS, 1),
    Pid = spawn(fun() -> receive owner -> serve(Sock, Counts) end end),
    ok = gen_tcp:controlling_process(Sock, Pid),
    Pid ! owner,
    accept(Listen, Counts).

serve(Sock, Counts) ->
    ok = inet:setopts(Sock, [{packet, line}]),
    case gen_tcp:recv(Sock, 0) of
        {ok, Line} ->
            Size = binary_to_integer(string:trim(Line)),
            ok = inet:setopts(Sock, [{packet, raw}]),
            {ok, Body} = gen_tcp:recv(Sock, Size),
            counters:add(Counts, ?REQUESTS, 1),
            Hex = string:lowercase(binary:encode_hex(crypto:hash(sha256, Body))),
            ok = gen_tcp:send(Sock, [Hex, <<"\r\n">>, Body]),
            serve(Sock, Counts);
        {error, closed} ->
            gen_tcp:close(Sock)
    end.

%% The signal handler (gen_event): swap_handler passes the counts with the old handler's end.
init({Counts, _}) -> {ok, Counts}.

handle_event(sigterm, Counts) ->
    io:format("stopped: connections=~b requests=~b~n",
              [counters:get(Counts, ?CONNECTIONS), counters:get(Counts, ?REQUESTS)]),
    erlang:halt(0);
handle_event(_, Counts) ->
    {ok, Counts}.

handle_call(_, Counts) -> {ok, ok, Counts}.
